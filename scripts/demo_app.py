"""The demo's API: a small FastAPI shop instrumented with peekapi, with the latencies and failures of a real one.

Run by ``scripts/demo.py`` as ``uvicorn --app-dir scripts demo_app:app`` with ``PEEKAPI_API_KEY`` and
``PEEKAPI_ENDPOINT`` in its environment. Each route sleeps for a latency drawn from its own long-tailed
distribution (``PROFILES``, shared with the demo's backfill so that history and live traffic look alike), and
some fail as real ones do: unknown products (404), invalid orders (422), an unauthenticated ``/v1/me`` (401),
a payment gateway that times out now and then (502), a bug (500).
"""

from __future__ import annotations

import asyncio
import random

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from peekapi.middleware import PeekApiASGI

# route -> (median latency ms, spread: sigma of the log-normal)
PROFILES: dict[tuple[str, str], tuple[float, float]] = {
    ("GET", "/v1/products"): (14.0, 0.35),
    ("GET", "/v1/products/{product_id}"): (6.0, 0.4),
    ("GET", "/v1/search"): (120.0, 0.7),
    ("POST", "/v1/orders"): (38.0, 0.45),
    ("GET", "/v1/orders/{order_id}"): (9.0, 0.4),
    ("POST", "/v1/payments"): (240.0, 0.5),
    ("GET", "/v1/me"): (3.0, 0.3),
}
PAYMENT_FAILURES = 0.04  # the gateway times out this often: 502

app = FastAPI(title="Demo shop")
# The one line of peekapi: the key and the endpoint come from PEEKAPI_API_KEY and PEEKAPI_ENDPOINT.
app.add_middleware(PeekApiASGI, exclude_paths=["/health"])


def latency_ms(method: str, route: str, rng: random.Random | None = None) -> float:
    """A latency for one request to ``route``, in ms, drawn from its profile (with ``rng`` when given)."""
    median, sigma = PROFILES[(method, route)]
    return median * (rng.lognormvariate if rng else random.lognormvariate)(0.0, sigma)


async def work(method: str, route: str) -> None:
    await asyncio.sleep(latency_ms(method, route) / 1000.0)


class Order(BaseModel):
    product_id: int
    quantity: int


@app.get("/v1/products")
async def list_products(limit: int = 20) -> list[dict[str, object]]:
    await work("GET", "/v1/products")
    return [{"id": i, "name": f"product {i}", "price": 10 + i % 90} for i in range(min(max(limit, 0), 100))]


@app.get("/v1/products/{product_id}")
async def get_product(product_id: int) -> dict[str, object]:
    await work("GET", "/v1/products/{product_id}")
    if product_id > 900:
        raise HTTPException(404, "no such product")
    return {"id": product_id, "name": f"product {product_id}", "price": 10 + product_id % 90}


@app.get("/v1/search")
async def search(q: str = "") -> dict[str, object]:
    await work("GET", "/v1/search")
    return {"query": q, "results": [{"id": (hash(q) + i) % 900} for i in range(len(q) % 7)]}


@app.post("/v1/orders", status_code=201)
async def create_order(order: Order) -> dict[str, object]:
    await work("POST", "/v1/orders")
    return {"id": random.randrange(1, 10**6), "product_id": order.product_id, "quantity": order.quantity}


@app.get("/v1/orders/{order_id}")
async def get_order(order_id: int) -> dict[str, object]:
    await work("GET", "/v1/orders/{order_id}")
    if order_id % 97 == 0:
        raise RuntimeError("order store returned a half-written row")  # a bug: 500
    return {"id": order_id, "status": "shipped"}


@app.post("/v1/payments")
async def pay(request: Request) -> dict[str, object]:
    await work("POST", "/v1/payments")
    await request.body()
    if random.random() < PAYMENT_FAILURES:
        raise HTTPException(502, "payment gateway timed out")
    return {"status": "paid"}


@app.get("/v1/me")
async def me(request: Request) -> dict[str, object]:
    await work("GET", "/v1/me")
    if "x-api-key" not in request.headers:
        raise HTTPException(401, "sign in first")
    return {"consumer": request.headers["x-api-key"]}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
