"""Recipes: a named, checked description of a build, and the native job
type that fetches its sources and requests the build (:mod:`.recipe`)."""
