-- A setup token belongs to one user: it sets that user's password and no one else's.
ALTER TABLE setup_tokens ADD COLUMN user_name TEXT NOT NULL DEFAULT 'admin';
