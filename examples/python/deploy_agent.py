"""The deployment agent in Python. With CLAIIM running and deploy-bot's OAuth client in
CLAIIM_CLIENT_ID and CLAIIM_CLIENT_SECRET (see the README), in the project folder:

    .tools/venv/bin/python examples/python/deploy_agent.py
"""

import os

from claiim import Claiim, DeniedError

claiim = Claiim(
    os.environ.get("CLAIIM_URL", "http://127.0.0.1:8080"),
    client_id=os.environ["CLAIIM_CLIENT_ID"],
    client_secret=os.environ["CLAIIM_CLIENT_SECRET"],
)


@claiim.guard(action="deploy", resource=lambda service, environment: environment, purpose="release 1.4.0", skill="deploy@1.2.0")
def deploy(service, environment):
    # The real work would go here; it runs only when CLAIIM allows it.
    return f"{service} 1.4.0 is live on {environment}"


for environment in ("staging", "production"):
    try:
        print(f"{environment}: allowed: {deploy('checkout', environment)}")
    except DeniedError as denied:
        print(f"{environment}: denied: {'; '.join(r.message for r in denied.reasons)} (decision {denied.decision_id})")
