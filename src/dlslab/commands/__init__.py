"""dlslab.commands"""
