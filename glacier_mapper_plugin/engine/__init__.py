"""The engine: the process, environment and command line that run the science of `core/`
outside QGIS. `client` and `install` use the standard library only (QGIS imports them);
`runner`, `steps`, `cli` and `check` run in the engine's own environment."""
