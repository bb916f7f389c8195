"""Data cleaning: quality rules, exact and near dedup, PII scrubbing (docs/data_cleaning.md)."""
from research.data.cleaning.cleaner import CleaningConfig, CleaningError, clean, make_config
from research.data.cleaning.dedup import NearDedupConfig, NearDedupIndex
from research.data.cleaning.rules import RuleError, make_rules, failed_rules
from research.data.cleaning.pii import scrub
