"""The starter projection's rows, exactly."""

import sys
import unittest

sys.dont_write_bytecode = True

from app import COLLECTION, Starter  # noqa: E402
from projector_plugin.testing import Harness, event_from_sample  # noqa: E402


class StarterTest(unittest.TestCase):
    def test_counts_events_per_key(self):
        harness = Harness(Starter)
        harness.feed_all([
            event_from_sample('{"key": "ord-1", "headers": {"__TypeId__": "x.OrderCreated"}, "value": {}}'),
            event_from_sample('{"key": "ord-1", "headers": {}, "value": {"type": "OrderShipped"}}'),
        ])
        self.assertEqual(harness.rows(COLLECTION), [{"id": "ord-1", "last_type": "OrderShipped", "events": 2}])


if __name__ == "__main__":
    unittest.main()
