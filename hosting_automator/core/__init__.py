"""Configuration, logging, retries and the run lock: what every part of the run shares."""
