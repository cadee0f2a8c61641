//! Descriptions of the checked model for other languages: `.proto` files and a JSON descriptor.
