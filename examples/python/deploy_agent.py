"""The deployment agent in Python. With CLAIIM running and deploy-bot's OAuth client in
CLAIIM_CLIENT_ID and CLAIIM_CLIENT_SECRET (see the README), in the project folder:

    .tools/venv/bin/python examples/python/deploy_agent.py

Staging is allowed. Production waits for a human's approval (up to 10 minutes): approve it as the
README's walkthrough shows, and the agent deploys, once.
"""

import os

from claiim import Claiim, DeniedError

claiim = Claiim(
    os.environ.get("CLAIIM_URL", "http://127.0.0.1:8080"),
    client_id=os.environ["CLAIIM_CLIENT_ID"],
    client_secret=os.environ["CLAIIM_CLIENT_SECRET"],
)


# wait_for_approval: when CLAIIM answers approval_required, wait (up to 600 s) for the human, then
# ask again with the approval; the function runs only on CLAIIM's allow.
@claiim.guard(action="deploy", resource=lambda service, environment: environment, purpose="release 1.4.0", skill="deploy@1.2.0", wait_for_approval=600)
def deploy(service, environment):
    # The real work would go here; it runs only when CLAIIM allows it.
    return f"{service} 1.4.0 is live on {environment}"


for environment in ("staging", "production"):
    if environment == "production":
        print("production: asking; a human may have to approve it (GET /v1/approvals?status=pending)", flush=True)
    try:
        print(f"{environment}: allowed: {deploy('checkout', environment)}")
    except DeniedError as denied:  # a deny; or an approval rejected, expired or not given in time
        print(f"{environment}: denied: {'; '.join(r.message for r in denied.reasons)} (decision {denied.decision_id})")
