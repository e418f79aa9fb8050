"""File formats shared by the code that writes them and the code that reads them."""

# hardware_profiles/<name>/<model>.csv
PROFILE_CSV_COLUMNS = ("batch", "query_tokens", "context_tokens", "latency_ms_p50", "latency_ms_p10",
                       "latency_ms_p90", "samples")
