"""``customer-ltv``: exact rows for the samples and hand-computed cases."""

import unittest

from support import data_events, sample, samples

from customer_ltv.app import COLLECTION, CustomerLtv
from projector_plugin import ProjectionError
from projector_plugin.testing import Harness


def line(type_name: str, order: str, event_id: str, **fields) -> str:
    """A sample line for an event of ``type_name`` on ``order``."""
    import json

    value = {"type": type_name, "eventId": event_id, "orderId": order, **fields}
    return json.dumps({"key": order, "headers": {}, "value": value})


def created(order, event_id, customer="cust-1", name="Ada", items=((1, "10.00"),)):
    lines = ", ".join(
        f'{{"productId": "p", "productName": "P", "quantity": {q}, "unitPrice": {p}}}' for q, p in items)
    return sample(f'{{"key": "{order}", "headers": {{}}, "value": {{"type": "OrderCreated", '
                  f'"eventId": "{event_id}", "orderId": "{order}", "customerId": "{customer}", '
                  f'"customerName": "{name}", "items": [{lines}], "createdAt": "2026-11-20T09:00:00Z"}}}}')


def submitted(order, event_id, total):
    return sample(f'{{"key": "{order}", "headers": {{}}, "value": {{"type": "OrderSubmitted", '
                  f'"eventId": "{event_id}", "orderId": "{order}", "total": {total}, '
                  f'"submittedAt": "2026-11-20T09:05:00Z"}}}}')


def cancelled(order, event_id):
    return sample(line("OrderCancelled", order, event_id, cancelledAt="2026-11-20T10:00:00Z"))


def shipped(order, event_id):
    return sample(line("OrderShipped", order, event_id, carrier="DHL", trackingNumber="1",
                       shippedAt="2026-11-21T10:00:00Z"))


def customer(orders, paid, cancelled_orders, revenue, items, by_status, average, name="Ada", cid="cust-1"):
    return {"customer_id": cid, "customer_name": name, "orders": orders, "paid_orders": paid,
            "cancelled_orders": cancelled_orders, "revenue": revenue, "items": items,
            "orders_by_status": by_status, "average_order_value": average}


class CustomerLtvTest(unittest.TestCase):
    def test_samples_give_exact_rows(self):
        harness = Harness(CustomerLtv)
        outcomes = harness.feed_all(samples())
        self.assertTrue(all(o.ok for o in outcomes))
        self.assertEqual(harness.rows(COLLECTION), [
            customer(2, 1, 1, "116.80", 3, {"SHIPPED": 1, "CANCELLED": 1}, "116.80",
                     name="Zoë Müller", cid="cust-7"),
            customer(1, 1, 0, "79.47", 4, {"SHIPPED": 1}, "79.47", name="Kenji Watanabe", cid="cust-9"),
        ])
        self.assertEqual(
            harness.state_bytes("ord-1003"),
            b'{"applied":["e-6","e-7","e-8"],"customer":"cust-7","status":"CANCELLED","units":4,"total":48.00}')

    def test_open_order_counts_but_does_not_pay(self):
        harness = Harness(CustomerLtv)
        harness.feed(created("o-1", "e-1", items=((2, "8.90"),)))
        self.assertEqual(harness.row(COLLECTION, "cust-1"), customer(1, 0, 0, "0.00", 0, {"CREATED": 1}, None))

    def test_cancel_after_submit_subtracts_the_order(self):
        harness = Harness(CustomerLtv)
        for event in (created("o-1", "e-1", items=((2, "5.00"),)), submitted("o-1", "e-2", "10.00"),
                      created("o-2", "e-3", items=((1, "4.995"),)), submitted("o-2", "e-4", "4.995"),
                      cancelled("o-1", "e-5")):
            harness.feed(event)
        self.assertEqual(harness.row(COLLECTION, "cust-1"),
                         customer(2, 1, 1, "5.00", 1, {"SUBMITTED": 1, "CANCELLED": 1}, "5.00"))

    def test_cancel_before_submit_only_counts_the_cancellation(self):
        harness = Harness(CustomerLtv)
        for event in (created("o-1", "e-1"), cancelled("o-1", "e-2"), submitted("o-1", "e-3", "10.00"),
                      shipped("o-1", "e-4")):
            harness.feed(event)
        self.assertEqual(harness.row(COLLECTION, "cust-1"), customer(1, 0, 1, "0.00", 0, {"CANCELLED": 1}, None))

    def test_redelivery_changes_nothing(self):
        harness = Harness(CustomerLtv)
        events = [created("o-1", "e-1"), submitted("o-1", "e-2", "10.00"), cancelled("o-1", "e-3")]
        harness.feed_all(events)
        before = harness.rows(COLLECTION)
        outcomes = harness.feed_all(events + [submitted("o-1", "e-2", "10.00")])
        self.assertEqual([o.operations for o in outcomes], [[], [], [], []])
        self.assertEqual(harness.rows(COLLECTION), before)
        self.assertEqual(len(harness.logs), 4)

    def test_two_orders_of_one_customer_sum_exactly(self):
        harness = Harness(CustomerLtv)
        for event in (created("o-1", "e-1", name="Ada L."), submitted("o-1", "e-2", "0.1"),
                      created("o-2", "e-3", name="Ada Lovelace", items=((3, "0.1"), (1, "0.2"))),
                      submitted("o-2", "e-4", "0.2"), shipped("o-2", "e-5")):
            harness.feed(event)
        self.assertEqual(harness.row(COLLECTION, "cust-1"),
                         customer(2, 2, 0, "0.30", 5, {"SUBMITTED": 1, "SHIPPED": 1}, "0.15", name="Ada Lovelace"))

    def test_item_added_after_counting_adds_units(self):
        harness = Harness(CustomerLtv)
        item = sample(line("ItemAdded", "o-1", "e-3", productId="p", productName="P", quantity=2,
                           unitPrice=1, occurredAt="2026-11-20T09:06:00Z"))
        harness.feed_all([created("o-1", "e-1"), submitted("o-1", "e-2", "10.00"), item])
        self.assertEqual(harness.row(COLLECTION, "cust-1")["items"], 3)

    def test_unseen_opening_writes_nothing(self):
        harness = Harness(CustomerLtv)
        outcomes = harness.feed_all([submitted("o-9", "e-1", "10.00"), shipped("o-9", "e-2")])
        self.assertEqual([o.operations for o in outcomes], [[], []])
        self.assertEqual(harness.rows(COLLECTION), [])

    def test_edge_cases_and_errors(self):
        harness = Harness(CustomerLtv)
        outcomes = harness.feed_all(data_events("edge_cases"))
        self.assertTrue(all(o.ok for o in outcomes), [o.error for o in outcomes])
        self.assertEqual(harness.rows(COLLECTION), [
            # ord-2001 placed 10.005 -> 10.01; ord-2004 submitted 0.30 then cancelled.
            customer(2, 1, 1, "10.01", 3, {"PLACED": 1, "CANCELLED": 1}, "10.01", name="Ada Lovelace"),
            # ord-2005 created and shipped, never submitted; its keyless cancel still applies.
            customer(1, 0, 1, "0.00", 0, {"CANCELLED": 1}, None, name="Grace Ö", cid="cust-2"),
        ])
        errors = [harness.feed_outcome(e).error for e in data_events("errors")]
        self.assertTrue(all(errors), errors)
        self.assertEqual(harness.state_bytes("ord-9"), None)

    def test_failed_event_leaves_no_state(self):
        harness = Harness(CustomerLtv)
        harness.feed(created("o-1", "e-1"))
        with self.assertRaises(ProjectionError):
            harness.feed(sample(line("OrderSubmitted", "o-1", "e-2", total="x", submittedAt="2026-11-20T09:05:00Z")))
        self.assertEqual(harness.state("o-1")["applied"], ["e-1"])


if __name__ == "__main__":
    unittest.main()
