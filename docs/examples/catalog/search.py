"""Stands in for a search engine client in the examples."""


class SearchIndex:
    def __init__(self) -> None:
        self.rebuilt: list[int] = []

    def rebuild(self, catalog_id: int) -> None:
        self.rebuilt.append(catalog_id)

    def reindex(self, catalog_id: int, product_ids: list[int]) -> None:
        self.rebuilt.extend([catalog_id] * len(product_ids))


search_index = SearchIndex()
