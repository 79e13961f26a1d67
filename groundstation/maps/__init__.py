"""The dashboard's map without internet: what it is drawn from, and installing a region at home."""
