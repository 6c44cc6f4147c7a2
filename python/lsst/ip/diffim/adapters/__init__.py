"""The only layer between lsst-ip-diffim and lsst.images object construction."""
