"""Configuration: `coffer.toml` for the shop, environment variables for the process and secrets.

The file (path from `COFFER_CONFIG`; built-in defaults when unset) holds what an operator tunes:
assets, the diamond price per currency, coin packages, the gift catalog, commission and fee
rates, call rates and minimums, plans and payout minimums. Secrets never live in it: they come
only from the environment (DESIGN.md, "Configuration"). A bad file is refused at start-up with
the line and the reason (`ConfigError`).
"""

from coffer.config.settings import (
    JWT_SECRET_BYTES_MIN,
    REAL_PROVIDER_NAMES,
    TRUSTED_PROXIES_MAX,
    Environment,
    IpNetwork,
    ProviderName,
    Settings,
)
from coffer.config.shop import (
    DIAMOND,
    RETRY_DAY_MAX,
    RETRY_DAYS_MAX,
    Amount,
    AssetCode,
    AssetConfig,
    Bps,
    CallConfig,
    ConfigError,
    EscrowConfig,
    GiftConfig,
    PackageConfig,
    PayoutConfig,
    PlanConfig,
    ShopConfig,
    Slug,
    SplitConfig,
    SubscriptionConfig,
    TopupConfig,
    load_shop,
    parse_shop,
)

__all__ = [
    "DIAMOND",
    "JWT_SECRET_BYTES_MIN",
    "REAL_PROVIDER_NAMES",
    "RETRY_DAYS_MAX",
    "RETRY_DAY_MAX",
    "TRUSTED_PROXIES_MAX",
    "Amount",
    "AssetCode",
    "AssetConfig",
    "Bps",
    "CallConfig",
    "ConfigError",
    "Environment",
    "EscrowConfig",
    "GiftConfig",
    "IpNetwork",
    "PackageConfig",
    "PayoutConfig",
    "PlanConfig",
    "ProviderName",
    "Settings",
    "ShopConfig",
    "Slug",
    "SplitConfig",
    "SubscriptionConfig",
    "TopupConfig",
    "load_shop",
    "parse_shop",
]
