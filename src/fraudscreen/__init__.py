"""fraudscreen: rules-based screening of medical-insurance claims for fund fraud."""

__version__ = "0.1.0"
