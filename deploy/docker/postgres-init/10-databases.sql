-- auth_service and post_service each own a database (POSTGRES_DB creates murmur_auth).
CREATE DATABASE murmur_post;
