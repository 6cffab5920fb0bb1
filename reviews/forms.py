"""The review form of the product page. The service validates the rules; the
form collects the input and shows the service's errors on its fields."""

from django import forms

from kernel.errors import DomainError


class ReviewForm(forms.Form):
    rating = forms.TypedChoiceField(
        choices=[(stars, f"{stars} star{'s' if stars > 1 else ''}") for stars in range(5, 0, -1)],
        coerce=int,
    )
    title = forms.CharField(required=False, max_length=120, label="Title (optional)")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), label="Your review")

    def add_domain_error(self, error: DomainError) -> None:
        self.add_error(error.field if error.field in self.fields else None, error.message)
