"""The appliance: backup and restore, systemd integration and the control socket the CLI talks to."""
