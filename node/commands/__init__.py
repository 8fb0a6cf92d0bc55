"""The `nnode` commands, one module per group of what they act on; node/cli.py assembles them into one parser.

client.py talks to the running node (its control socket) and opens the database when it is not running;
appliance.py sets up, runs, shows, backs up and restores the node; federation.py its peers and events; safety.py CAP
alerts; people.py residents and sign-in links; sharing.py the agencies and their offline tools (the agency client is
in node/sharing/agency_cli.py).
"""
