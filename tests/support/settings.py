"""Values for the job's settings that the tests of the settings share."""

REQUIRED = {  # a value for each setting the job cannot run without
    "SUPABASE_URL": "https://project.supabase.co",
    "SUPABASE_SERVICE_KEY": "service-key-value",
    "MATOMO_API_URL": "https://stats.example.org",
    "MATOMO_API_TOKEN": "matomo-token-value",
}
LONG_LABEL = "a" * 64  # one character more than a label of a host name may have
