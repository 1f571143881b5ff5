#!/usr/bin/env python3
"""Adds the index Tansu 0.6.0's SQLite schema lacks: header(topition, offset_id).

Tansu reads the headers of every fetched record with a query joining on those columns; without
the index each record fetched scans every header of every topic, so fetches slow down
quadratically and starve the broker's single storage queue, consumer-group heartbeats included.

Usage: tansu-index.py <path of tansu.db>   (waits up to 10 s for Tansu to create its schema)
"""
import sqlite3
import sys
import time

db = sqlite3.connect(sys.argv[1], timeout=60)
for _ in range(100):
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'header'").fetchone():
        break
    time.sleep(0.1)
db.execute("CREATE INDEX IF NOT EXISTS header_topition_offset_id ON header (topition, offset_id)")
db.commit()
