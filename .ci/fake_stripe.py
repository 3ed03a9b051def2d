"""A tiny stand-in for Stripe's API, for .ci/smoke and the `consume-loop` benchmark.

- `POST /v1/checkout/sessions`: a new open Checkout Session (the test fixture re-shaped, as
  tests/api/helpers.rs does);
- `POST /v1/customers`: a Customer (`api_customer.json` with a new id);
- `POST /v1/payment_intents`: a succeeded PaymentIntent (`api_payment_intent.json` with a new id
  and the request's customer, payment method, amount and metadata);
- `GET /v1/payment_intents/<id>`: that PaymentIntent, or for any other id the fixture (a
  Checkout's, with its card); `GET /v1/payment_intents/search`: none.

As Stripe does, a POST's first answer is stored under its `Idempotency-Key` and replayed for the
same key. Anything else is a 404. Listens on 127.0.0.1 on a free port and writes that port to the
file named by its one argument.

usage: python3 fake_stripe.py PORT_FILE
"""

import http.server
import itertools
import json
import pathlib
import sys
import threading
import urllib.parse

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures"
counter = itertools.count(1)
answered = {}  # Idempotency-Key -> body of its first answer
intents = {}  # PaymentIntent id -> body
lock = threading.Lock()  # a key's first answer is made once


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def checkout_session(_form):
    session_id = f"cs_test_smoke_{next(counter):04}"
    session = fixture("api_checkout_session_retrieved_expanded.json")
    session.update(id=session_id, url=f"https://checkout.stripe.com/c/pay/{session_id}",
                   status="open", payment_status="unpaid")
    return session


def customer(form):
    body = fixture("api_customer.json")
    body.update(id=f"cus_fake_{next(counter):06}", email=form.get("email"))
    return body


def payment_intent(form):
    body = fixture("api_payment_intent.json")
    intent_id = f"pi_fake_{next(counter):06}"
    body.update(id=intent_id, client_secret=f"{intent_id}_secret_fake",
                amount=int(form.get("amount", 0)), amount_received=int(form.get("amount", 0)),
                currency=form.get("currency", "usd"), customer=form.get("customer"),
                payment_method=form.get("payment_method"),
                metadata={k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")})
    intents[intent_id] = body
    return body


POSTS = {
    "/v1/checkout/sessions": checkout_session,
    "/v1/customers": customer,
    "/v1/payment_intents": payment_intent,
}


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        make = POSTS.get(self.path.split("?")[0])
        if make is None:
            self.send_error(404)
            return
        key = self.headers.get("Idempotency-Key")
        with lock:
            body = answered.get(key) if key is not None else None
            if body is None:
                body = make(dict(urllib.parse.parse_qsl(raw)))
                if key is not None:
                    answered[key] = body
        self.answer(body)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        if path == "/v1/payment_intents/search":
            self.answer({"object": "search_result", "data": [], "has_more": False,
                         "next_page": None, "url": path})
        elif path.startswith("/v1/payment_intents/"):
            intent_id = path.rsplit("/", 1)[1]
            with lock:
                body = intents.get(intent_id)
            if body is None:  # a Checkout's PaymentIntent (the fixture, with its card)
                body = dict(fixture("api_payment_intent.json"), id=intent_id)
            self.answer(body)
        else:
            self.send_error(404)

    def log_message(self, fmt, *args):
        print("fake stripe:", fmt % args, file=sys.stderr)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
pathlib.Path(sys.argv[1]).write_text(str(server.server_address[1]))
server.serve_forever()
