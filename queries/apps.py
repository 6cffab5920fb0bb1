from django.apps import AppConfig


class QueriesConfig(AppConfig):
    name = "queries"
    verbose_name = "Queries"

    def ready(self) -> None:
        from kernel import pages
        from queries.views import render_product_page

        pages.register_product_page(render_product_page)
