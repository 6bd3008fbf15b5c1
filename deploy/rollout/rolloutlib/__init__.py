"""deltasync fleet rollout: inventory, ssh plumbing, hub health gates, plan and run.

The entry point is deploy/rollout/rollout; see docs/operations.md, "Rollout and upgrade".
"""
