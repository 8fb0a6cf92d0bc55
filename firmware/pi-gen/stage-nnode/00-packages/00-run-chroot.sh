#!/bin/bash -e
# vcmailbox (sets the firmware's one-shot tryboot flag) moved between packages across Raspberry Pi OS releases.
command -v vcmailbox >/dev/null || apt-get install -y --no-install-recommends raspi-utils-core \
	|| apt-get install -y --no-install-recommends libraspberrypi-bin
command -v vcmailbox >/dev/null
