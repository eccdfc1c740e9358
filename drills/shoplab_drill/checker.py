"""The set checker (after Jepsen's): every order the client was told succeeded is in PostgreSQL exactly
once, and the product's stock moved by exactly the number of orders created.

Pure: it takes what the client saw (one entry per logical order: its key, its outcome and the order id
it was told) and what PostgreSQL holds (the drill's idempotency keys with the order id each stored, the
orders of the drill's product created since the drill started, the stock before and after), and says
what is wrong. Nothing is silently dropped: orders the client gave up on are "unknown outcome", and
PostgreSQL tells which of them were committed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ClientOrder:
    key: str
    outcome: str  # acked | rejected | unknown | pending
    order_id: int | None = None


@dataclass
class DatabaseState:
    keys: dict[str, int | None]  # idempotency key -> the order id its stored answer names
    orders: list[int]  # ids of orders of the drill's product created since the drill started
    stock_before: int  # the product's stock when the load started (after the restock)
    stock_after: int
    quantity: int = 1  # every drill order takes this many
    # Orders among `orders` that another client placed with a key of its own (an exercise's grader, a
    # user): not the drill's, not duplicates; they moved the stock too.
    foreign: list[int] = field(default_factory=list)


@dataclass
class Verdict:
    acknowledged: int
    rejected: int
    unknown: int
    unknown_committed: int  # unknown to the client, found in PostgreSQL
    unknown_not_committed: int
    lost: int
    lost_keys: list[str] = field(default_factory=list)
    duplicated: int = 0
    duplicated_orders: list[int] = field(default_factory=list)
    foreign: int = 0  # orders of the product another client placed meanwhile (own keys)
    phantom: int = 0  # the client was told no (4xx), PostgreSQL has the order
    phantom_keys: list[str] = field(default_factory=list)
    mismatched: int = 0  # acknowledged with one order id, stored with another
    mismatched_keys: list[str] = field(default_factory=list)
    orders_created: int = 0
    stock_moved: int = 0
    stock_consistent: bool = True
    ok: bool = True
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def check(client: list[ClientOrder], db: DatabaseState, sample: int = 10) -> Verdict:
    """Compare what the client was told with what PostgreSQL holds."""
    orders = set(db.orders)
    acked = [c for c in client if c.outcome == "acked"]
    rejected = [c for c in client if c.outcome == "rejected"]
    unknown = [c for c in client if c.outcome not in ("acked", "rejected")]

    lost = [c.key for c in acked if db.keys.get(c.key) is None or db.keys[c.key] not in orders]
    mismatched = [
        c.key
        for c in acked
        if c.order_id is not None and db.keys.get(c.key) is not None and db.keys[c.key] != c.order_id
    ]

    def committed(c: ClientOrder) -> bool:
        return db.keys.get(c.key) is not None and db.keys[c.key] in orders

    phantom = [c.key for c in rejected if committed(c)]
    committed_unknown = [c for c in unknown if committed(c)]
    # Orders of the product that no key names (ours or another client's): a retry that created a second order.
    named = {order_id for order_id in db.keys.values() if order_id is not None} | set(db.foreign)
    extra = sorted(orders - named)
    stock_moved = db.stock_before - db.stock_after
    expected_move = len(orders) * db.quantity
    stock_consistent = stock_moved == expected_move
    # Stock taken for more orders than exist (a decrement whose order row vanished) is a duplicate too.
    duplicated = len(extra) + max(0, (stock_moved - expected_move) // max(db.quantity, 1))

    problems = []
    if lost:
        problems.append(f"{len(lost)} acknowledged order(s) not in PostgreSQL (lost), e.g. {lost[:sample]}")
    if duplicated:
        problems.append(
            f"{duplicated} order(s) created more than once (duplicated): orders no key names "
            f"{extra[:sample]}, stock moved {stock_moved} for {len(orders)} order(s)"
        )
    if not stock_consistent:
        problems.append(
            f"stock moved by {stock_moved} but {len(orders)} order(s) of quantity {db.quantity} were created"
        )
    if phantom:
        problems.append(f"{len(phantom)} order(s) refused to the client but committed: {phantom[:sample]}")
    if mismatched:
        problems.append(f"{len(mismatched)} key(s) acknowledged with another order id: {mismatched[:sample]}")
    return Verdict(
        acknowledged=len(acked),
        rejected=len(rejected),
        unknown=len(unknown),
        unknown_committed=len(committed_unknown),
        unknown_not_committed=len(unknown) - len(committed_unknown),
        lost=len(lost),
        lost_keys=lost[:sample],
        duplicated=duplicated,
        duplicated_orders=extra[:sample],
        foreign=len(set(db.foreign) & orders),
        phantom=len(phantom),
        phantom_keys=phantom[:sample],
        mismatched=len(mismatched),
        mismatched_keys=mismatched[:sample],
        orders_created=len(orders),
        stock_moved=stock_moved,
        stock_consistent=stock_consistent,
        ok=not problems,
        problems=problems,
    )
