"""asin-platform: daily Amazon ASIN signals -> mart -> features -> Explosive Score -> ranker."""

import warnings

# Chosen on purpose, so filtered by exact message rather than by category:
# - partitioned asset checks (Preview in 1.13) give per-(date, site) check results in the UI;
# - backfill_policy (Beta) gives ranged backfill runs, seconds of run overhead saved per partition;
# - dagster-pandas' typed frames (Beta) carry the export's column contract (the design card's pick).
warnings.filterwarnings("ignore", message=r"Specifying a partitions_def on an AssetCheckSpec")
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function")
warnings.filterwarnings("ignore", message=r"Class `PandasColumn` is currently in beta")
warnings.filterwarnings(
    "ignore", message=r"Function `create_dagster_pandas_dataframe_type` is currently in beta"
)
