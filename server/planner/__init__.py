"""Central planner: rostering (CP-SAT) and dispatch (OR-Tools routing), re-planned live."""
