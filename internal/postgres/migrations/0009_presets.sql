-- A provider made from a preset of the catalog (internal/catalog) keeps the
-- preset's name and the template variables it was filled with, so that a
-- refresh applies the profile's departures from RFC 6749 (body format,
-- response paths, error classes, ...) through the same code path.
ALTER TABLE providers ADD COLUMN preset TEXT NOT NULL DEFAULT '';
ALTER TABLE providers ADD COLUMN template_vars TEXT NOT NULL DEFAULT '{}';
