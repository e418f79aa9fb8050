"""File formats shared by the code that writes them and the code that reads them."""

# hardware_profiles/<name>/<model>.csv
PROFILE_CSV_COLUMNS = ("batch", "query_tokens", "context_tokens", "latency_ms_p50", "latency_ms_p10",
                       "latency_ms_p90", "samples")

# jobs.csv of `specsim run --out` when jobs were recorded (--timeline, --report): one row per job on a
# device or link direction, in the order they were logged (server.Server.log)
JOB_CSV_COLUMNS = ("server", "start_s", "end_s", "label")

# the scenario as it ran (after --set; a plan's with the SLO it planned for), in every output folder
SCENARIO_FILE = "scenario.yaml"
