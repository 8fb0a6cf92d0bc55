"""People: the manager's claim, residents, invites, sessions and sign-in."""
