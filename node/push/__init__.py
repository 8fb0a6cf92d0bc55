"""Web Push: alerts, reports and SOS calls reach residents' locked phones (node/push/sender.py)."""
