"""Configuration: defaults, presets shipped with the package, validation and run identity, the recipe table."""
