"""Tools above the device and server layers: the fleet simulator, rehearsals, the demo tour, the admin API client."""
