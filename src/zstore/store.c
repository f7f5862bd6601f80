/* placeholder: the compressed page store lands here */
