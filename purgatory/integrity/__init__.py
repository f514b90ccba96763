"""Do served repos point where their signed state says: the pure comparison (`compare`) and
the pass over the repos on disk (`sweep`)."""
