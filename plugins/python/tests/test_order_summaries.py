"""``order-summaries`` gives exactly the rows of the Rust plugin's tests."""

import unittest

from support import sample, samples

from order_summaries.app import COLLECTION, OrderSummaries
from projector_plugin import Level, ProjectionError
from projector_plugin.testing import Harness


def counts(outcomes):
    return [o.error if o.error else len(o.operations) for o in outcomes]


class OrderSummariesTest(unittest.TestCase):
    def run_samples(self) -> Harness:
        harness = Harness(OrderSummaries)
        outcomes = harness.feed_all(samples())
        # e-2 (ItemAdded) increments and upserts; the duplicate e-7 and
        # LoyaltyPointsGranted yield nothing.
        self.assertEqual(counts(outcomes), [1, 2, 1, 1, 1, 1, 1, 0, 1, 0, 1])
        return harness

    def test_samples_give_exact_rows(self):
        harness = self.run_samples()
        self.assertEqual(harness.rows(COLLECTION), [
            {"order_id": "ord-1001", "customer_id": "cust-7", "customer_name": "Zoë Müller",
             "status": "SHIPPED", "total": "116.80", "item_count": 2,
             "created_at": "2026-11-20T09:00:00Z", "updated_at": "2026-11-21T15:30:00Z"},
            {"order_id": "ord-1002", "customer_id": "cust-9", "customer_name": "Kenji Watanabe",
             "status": "SHIPPED", "total": "79.47", "item_count": 2,
             "created_at": "2026-11-20T23:59:59.999Z", "updated_at": "2026-11-22T01:00:00Z"},
            {"order_id": "ord-1003", "customer_id": "cust-7", "customer_name": "Zoë Müller",
             "status": "CANCELLED", "total": "48.00", "item_count": 1,
             "created_at": "2026-11-21T08:00:00Z", "updated_at": "2026-11-21T10:00:00Z"},
        ])
        self.assertIsNone(harness.row(COLLECTION, "ord-1004"), "LoyaltyPointsGranted is skipped")
        self.assertEqual(harness.logs, [(Level.DEBUG, "Skipped redelivered event e-7 of order ord-1003.")])

    def test_open_order_total_is_the_sum_of_lines(self):
        harness = Harness(OrderSummaries)
        harness.feed_all(samples()[:2])
        row = harness.row(COLLECTION, "ord-1001")
        self.assertEqual((row["status"], row["total"], row["item_count"]), ("CREATED", "116.80", 2))
        self.assertEqual(row["updated_at"], "2026-11-20T09:01:10Z")

    def test_redelivery_after_later_events_changes_nothing(self):
        harness = self.run_samples()
        before = harness.rows(COLLECTION)
        for event in samples():
            self.assertEqual(harness.feed(event), [])
        self.assertEqual(harness.rows(COLLECTION), before)
        self.assertEqual(harness.state_bytes("ord-1001"), b'{"applied":["e-1","e-2","e-3","e-4"]}')
        self.assertEqual(harness.state_bytes("ord-1003"), b'{"applied":["e-6","e-7","e-8"]}')

    def test_malformed_event_is_an_error_naming_the_field(self):
        harness = Harness(OrderSummaries)
        bad = sample('{"key":"ord-9","headers":{"__TypeId__":"x.OrderSubmitted"},'
                     '"value":{"eventId":"e-90","orderId":"ord-9","submittedAt":"2026-11-20T09:02:00Z"}}')
        with self.assertRaises(ProjectionError) as raised:
            harness.feed(bad)
        self.assertEqual(str(raised.exception), "OrderSubmitted: missing field `total`")
        self.assertEqual(harness.rows(COLLECTION), [])
        self.assertIsNone(harness.state_bytes("ord-9"), "a failed event is not marked applied")

    def test_item_added_on_an_unseen_order_creates_the_row(self):
        harness = Harness(OrderSummaries)
        harness.feed(sample('{"key":"ord-5","headers":{"__TypeId__":"ItemAdded"},"value":{"eventId":"e-1",'
                            '"orderId":"ord-5","productId":"p","productName":"P","quantity":3,'
                            '"unitPrice":0.1,"occurredAt":"2026-11-20T09:00:00+01:00"}}'))
        self.assertEqual(harness.row(COLLECTION, "ord-5"), {
            "order_id": "ord-5", "customer_id": None, "customer_name": None, "status": None,
            "total": "0.30", "item_count": 1, "created_at": None, "updated_at": "2026-11-20T08:00:00Z"})


if __name__ == "__main__":
    unittest.main()
