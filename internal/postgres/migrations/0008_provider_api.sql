-- The API a provider's tokens are for, which the broker's proxy
-- (/v1/proxy/{credential}/...) forwards to, and how a token is presented
-- to it: a header (name and scheme; Authorization: Bearer by default) or
-- a query parameter. '' in api_base_url: the provider has no proxy.
ALTER TABLE providers ADD COLUMN api_base_url TEXT NOT NULL DEFAULT '';
ALTER TABLE providers ADD COLUMN api_token_header TEXT NOT NULL DEFAULT 'Authorization';
ALTER TABLE providers ADD COLUMN api_token_scheme TEXT NOT NULL DEFAULT 'Bearer';
ALTER TABLE providers ADD COLUMN api_token_query TEXT NOT NULL DEFAULT '';
