"""Study recipes, one module per study. The table of studies is `dlslab.catalog`."""
