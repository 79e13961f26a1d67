"""groundstation"""
