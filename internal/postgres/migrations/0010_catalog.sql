-- What a provider's profile keeps with a grant besides its tokens
-- (Salesforce's instance_url, QuickBooks' realmId from the redirect,
-- Slack's team.id), as a JSON object of strings. Identifiers, never
-- secrets (tokenkeeper.ValidateExtra refuses token and secret names), so
-- they are stored unsealed and shown by the API.
ALTER TABLE credentials ADD COLUMN extras TEXT NOT NULL DEFAULT '{}';
-- The issuer a provider's endpoints were discovered from (provider add
-- --issuer), '' for none.
ALTER TABLE providers ADD COLUMN issuer TEXT NOT NULL DEFAULT '';
