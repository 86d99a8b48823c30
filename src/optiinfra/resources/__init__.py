"""Resources (FOUNDATION-0.2d) on the API: per-instance resource metrics and the scaling events acting on them."""
