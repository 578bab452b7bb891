"""Tests of one module of hosting_automator each: no subprocess, no socket (HTTP answered by `responses`); seconds."""
