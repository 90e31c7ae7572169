"""Campaigns: their files (``files``), their schedules (``schedule``) and planning an
occurrence into deliveries (``planner``)."""
