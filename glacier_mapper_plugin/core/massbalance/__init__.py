"""Mass balance (the Mass Balance Machine): climate, stake and WGMS records, hydrological
seasons, topography, the monthly model and its workflow. May import the common floor only.
"""
