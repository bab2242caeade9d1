"""JSON API: match a question, submit an inquiry (public, throttled per client address), pair similarity."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.client_address import client_address
from config.throttling import (
    AnonymousThrottle,
    FaqMatchThrottle,
    FaqPairsThrottle,
    PerUserThrottle,
    PublicInquiryApiThrottle,
    ThrottlesInOneRoundTrip,
)
from embeddings.errors import EmbeddingError

from . import selectors, services
from .models import Inquiry
from .views import inquiry_token

UNAVAILABLE = "The embedding service is unavailable; please retry shortly."


class MatchRequest(serializers.Serializer):
    question = serializers.CharField(max_length=services.MAX_QUESTION_LENGTH)
    top_k = serializers.IntegerField(min_value=1, max_value=10, default=3)
    language = serializers.CharField(max_length=16, required=False, help_text="answer language; default: detected")


class CandidateSerializer(serializers.Serializer):
    faq_id = serializers.IntegerField()
    question = serializers.CharField()
    answer = serializers.CharField()
    answer_language = serializers.CharField()
    score = serializers.FloatField(allow_null=True, help_text="cosine of the FAQ's best wording")
    confidence = serializers.FloatField()
    rerank_score = serializers.FloatField(allow_null=True, help_text="the reranker's score; null when it is off")


class MatchResponse(serializers.Serializer):
    answered = serializers.BooleanField(help_text="the best candidate cleared the threshold and the margin rule")
    method = serializers.CharField()
    candidates = CandidateSerializer(many=True)


class MatchView(ThrottlesInOneRoundTrip, APIView):
    throttle_classes = [AnonymousThrottle, PerUserThrottle, FaqMatchThrottle]

    @extend_schema(request=MatchRequest, responses={200: MatchResponse, 503: None})
    def post(self, request: Request) -> Response:
        payload = MatchRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        question = payload.validated_data["question"]
        try:
            match = selectors.match_questions(questions=[question], top_k=payload.validated_data["top_k"])[0]
        except EmbeddingError:
            return Response({"detail": UNAVAILABLE}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        language = payload.validated_data.get("language") or services.detect_language(question)
        shown = selectors.answers_in(faq_ids=[candidate.faq_id for candidate in match.candidates], language=language)
        candidates = [
            {"faq_id": candidate.faq_id, "question": shown[candidate.faq_id].question,
             "answer": shown[candidate.faq_id].answer, "answer_language": shown[candidate.faq_id].language,
             "score": candidate.score, "confidence": candidate.confidence, "rerank_score": candidate.rerank_score}
            for candidate in match.candidates if candidate.faq_id in shown
        ]
        return Response({"answered": match.answered, "method": match.method, "candidates": candidates})


class InquiryRequest(serializers.Serializer):
    question = serializers.CharField(min_length=3, max_length=services.MAX_QUESTION_LENGTH)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    contact = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class InquiryResponse(serializers.Serializer):
    id = serializers.IntegerField()
    token = serializers.CharField(help_text="addresses the customer's page /ask/<token>/")
    status = serializers.CharField()
    matched = serializers.BooleanField(help_text="false: saved, matched later (embedding service unavailable)")
    answer = serializers.CharField(allow_null=True)
    suggestions = serializers.ListField(child=serializers.DictField())


class InquiryView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [PublicInquiryApiThrottle]

    @extend_schema(request=InquiryRequest, responses={201: InquiryResponse})
    def post(self, request: Request) -> Response:
        payload = InquiryRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        inquiry = services.submit_inquiry(
            **payload.validated_data, fingerprint=services.client_fingerprint(address=client_address(request))
        )
        answer = None
        if inquiry.status == Inquiry.Status.ANSWERED and inquiry.matched_faq:
            answer = inquiry.matched_faq.answer_in(inquiry.language)[0]
        return Response({
            "id": inquiry.id, "token": inquiry_token(inquiry), "status": inquiry.status,
            "matched": inquiry.matched_at is not None, "answer": answer, "suggestions": inquiry.suggestions,
        }, status=status.HTTP_201_CREATED)


class PairRequest(serializers.Serializer):
    text1 = serializers.CharField(max_length=services.MAX_QUESTION_LENGTH)
    text2 = serializers.CharField(max_length=services.MAX_QUESTION_LENGTH)


class PairResponse(serializers.Serializer):
    score = serializers.FloatField(help_text="the pair head's probability where one is fitted, else the cosine")
    same_meaning = serializers.BooleanField()
    threshold = serializers.FloatField(help_text="chosen for the active embedding space (fit_pair_head, or "
                                                 "evaluate_pairs --save)")
    method = serializers.CharField(help_text='"pair head" or "cosine"')


class PairView(ThrottlesInOneRoundTrip, APIView):
    throttle_classes = [AnonymousThrottle, PerUserThrottle, FaqPairsThrottle]

    @extend_schema(request=PairRequest, responses={200: PairResponse, 503: None})
    def post(self, request: Request) -> Response:
        payload = PairRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            verdict = selectors.pair_similarity(
                pairs=[(payload.validated_data["text1"], payload.validated_data["text2"])]
            )[0]
        except EmbeddingError:
            return Response({"detail": UNAVAILABLE}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response({"score": verdict.score, "same_meaning": verdict.same_meaning,
                         "threshold": verdict.threshold, "method": verdict.method})
