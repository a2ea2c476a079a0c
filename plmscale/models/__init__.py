"""Blocks every family is assembled from (``plmscale.models.common``); the families themselves live
in ``plmscale.families``."""
