/* placeholder: the zsmalloc implementation lands here */
