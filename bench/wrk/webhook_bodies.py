#!/usr/bin/env python3
"""Signed checkout.session.completed events for wrk (webhook.lua), one per line:
<signature>\t<body>. Every event is its own session for one of ACCOUNTS existing accounts,
as credits-bench's webhook scenario sends them, so wrk measures first deliveries, not
redeliveries of one body.

usage: webhook_bodies.py OUT N ACCOUNT_PREFIX ACCOUNTS PRICE_ID AMOUNT [SECRET]
(SECRET defaults to $STRIPE_WEBHOOK_SECRET; signatures are valid for the service's tolerance,
five minutes by default, so generate just before the run.)"""
import hashlib, hmac, json, os, sys, time, uuid

out, n, prefix, accounts, price, amount = sys.argv[1:7]
secret = sys.argv[7] if len(sys.argv) > 7 else os.environ["STRIPE_WEBHOOK_SECRET"]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "../../tests/fixtures/checkout_session_completed.json")) as f:
    fixture = json.load(f)
run = uuid.uuid4().hex[:8]
now = str(int(time.time()))
with open(out, "w") as f:
    for i in range(int(n)):
        account = f"{prefix}{i % int(accounts)}"
        event = json.loads(json.dumps(fixture))
        event["id"] = f"evt_wrk_{run}_{i}"
        session = event["data"]["object"]
        session.update(id=f"cs_wrk_{run}_{i}", client_reference_id=account,
                       payment_intent=f"pi_wrk_{run}_{i}", amount_total=int(amount),
                       amount_subtotal=int(amount))
        session.setdefault("metadata", {}).update(account_id=account, price_id=price)
        body = json.dumps(event, separators=(",", ":"))
        mac = hmac.new(secret.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
        f.write(f"t={now},v1={mac}\t{body}\n")
