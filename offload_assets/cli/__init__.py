"""The offload-assets command line."""
