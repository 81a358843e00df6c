"""``orderly demo``: a small sample shop, so a newcomer sees data at once.

Three accounts (staff, admin, a customer) with fresh random passwords, a
catalog, a funded wallet and a few orders in different states — all written
through the same services the API uses, in one transaction committed here (a
composition root, like ``orderly user create``). Loading twice is refused: the
sample accounts already exist.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from orderly.accounts import service as accounts
from orderly.accounts.schemas import Role
from orderly.accounts.security import Security
from orderly.audit.schemas import AuditContext
from orderly.catalog import service as catalog
from orderly.catalog.schemas import ProductCreate
from orderly.config import Settings
from orderly.core.db import Database
from orderly.ledger import service as ledger
from orderly.orders import service as orders
from orderly.orders.schemas import OrderCreate, OrderLineCreate, ShippingAddress

ACCOUNTS = (
    ("staff@demo.orderly.dev", Role.staff, "Grace Staff"),
    ("admin@demo.orderly.dev", Role.admin, "Alan Admin"),
    ("ada@demo.orderly.dev", Role.customer, "Ada Lovelace"),
)
PRODUCTS = (
    ("DEMO-KETTLE", "Copper kettle", 4_900, 25),
    ("DEMO-MUG", "Stoneware mug", 1_200, 120),
    ("DEMO-TEA", "Assam tea, 250 g", 850, 60),
    ("DEMO-SPOON", "Brass tea spoon", 450, 4),
)
ADDRESS = ShippingAddress(
    name="Ada Lovelace",
    line1="12 Analytical Row",
    city="London",
    postal_code="N1 9GU",
    country="GB",
)


@dataclass(frozen=True)
class DemoAccount:
    """A sample account and the password generated for it (printed once)."""

    email: str
    role: Role
    password: str


@dataclass(frozen=True)
class DemoShop:
    """What was loaded."""

    accounts: list[DemoAccount]
    products: int
    orders: int


async def load(settings: Settings, database_url: str) -> DemoShop:
    """Load the sample shop in one transaction (raises Conflict if it is already there)."""
    database = Database(database_url, pool_size=1, application_name="orderly-demo")
    security = Security.from_settings(settings)
    context = AuditContext(actor_role="operator", user_agent="orderly-demo")
    try:
        async with database.transaction() as tx:
            loaded: list[DemoAccount] = []
            ids = {}
            for email, role, name in ACCOUNTS:
                password = "demo-" + secrets.token_urlsafe(12)
                user = await accounts.create_user(
                    tx, security, email=email, password=password, role=role, name=name,
                    context=context,
                )  # fmt: skip
                ids[role] = user.id
                loaded.append(DemoAccount(email, role, password))
            products = [
                await catalog.create_product(
                    tx,
                    ProductCreate(
                        sku=sku,
                        name=name,
                        price_cents=price,
                        currency=settings.currency,
                        stock=stock,
                        low_stock_threshold=5,
                    ),
                )
                for sku, name, price, stock in PRODUCTS
            ]
            customer = ids[Role.customer]
            await ledger.grant_credits(
                tx,
                user_id=customer,
                amount_cents=20_000,
                transaction_id="demo-welcome-credit",
                reason="demo: welcome credit",
                actor_id=ids[Role.admin],
                currency=settings.currency,
            )
            baskets = (
                [(products[0], 1), (products[1], 2)],  # paid with credits
                [(products[2], 3)],  # paid with credits
                [(products[1], 1), (products[3], 1)],  # left pending
            )
            placed = []
            for basket in baskets:
                order = await orders.place(
                    tx,
                    customer,
                    OrderCreate(
                        items=[
                            OrderLineCreate(product_id=product.id, quantity=quantity)
                            for product, quantity in basket
                        ],
                        shipping_address=ADDRESS,
                    ),
                    security.cipher,
                )
                placed.append(order)
            for order in placed[:2]:
                locked = await orders.load_for_change(
                    tx, order.id, viewer_id=customer, sees_all=False
                )
                await orders.pay_with_credits(tx, locked, actor_id=customer)
            await tx.commit()
        return DemoShop(loaded, len(products), len(placed))
    finally:
        await security.limits.close()
        await database.dispose()
