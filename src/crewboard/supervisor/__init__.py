"""The supervisor: dispatcher, launcher, heartbeat, scheduler and reaper."""
