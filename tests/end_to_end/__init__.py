"""The command (`python -m hosting_automator.main`) as a subprocess against the stand-ins."""
