"""The living demo of `optiinfra serve --demo`: demo customers whose agents heartbeat, whose applications send
simulated traffic, whose incidents open and resolve and whose rollouts advance, all through the live services."""
