"""Rules that both domains use and that know neither: precision calibration (more may follow)."""
